// The API reference pages, /docs (Swagger UI) and /redoc (ReDoc), from files this API
// serves itself. The page is open to all and holds nothing; the document is
// openapi.json, which needs the API key once keys are set. A browser opening a page
// sends no bearer header, so this script fetches the document with the key this tab
// already has (the dashboard keeps it in sessionStorage under the same name) or asks
// for one, then hands the document to the viewer. Swagger UI's own calls ("Try it
// out") carry the same key.
"use strict";

const KEY_STORAGE = "orchestrator.apiKey";
const form = document.getElementById("key-form");
const input = document.getElementById("key-input");
const message = document.getElementById("key-message");
const viewer = document.getElementById("viewer");

function ask(text) {
  message.textContent = text;
  input.value = "";
  form.hidden = false;
  input.focus();
}

async function load() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  let response;
  try {
    response = await fetch("openapi.json", {
      headers: key ? { Authorization: `Bearer ${key}` } : {},
      cache: "no-store",
    });
  } catch (error) {
    ask(`The API did not answer (${error.message}).`);
    return;
  }
  if (response.status === 401) {
    ask(key ? "That key was refused. Enter a valid API key." : "This API needs a key to show its reference.");
    return;
  }
  if (!response.ok) {
    ask(`The API answered ${response.status} ${response.statusText}.`);
    return;
  }
  const spec = await response.json();
  form.hidden = true;
  if (document.body.dataset.viewer === "redoc") {
    window.Redoc.init(spec, {}, viewer);
  } else {
    swagger(spec, key);
  }
}

function swagger(spec, key) {
  const ui = window.SwaggerUIBundle({
    spec,
    domNode: viewer,
    deepLinking: true,
    layout: "BaseLayout",
    validatorUrl: null, // the badge would ask a public validator about this document
    presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset],
    // "Authorize" shows the key and lets it be changed; a call made without one still
    // carries the tab's key.
    onComplete: () => key && ui.preauthorizeApiKey("apiKey", key),
    requestInterceptor: (request) => {
      const current = sessionStorage.getItem(KEY_STORAGE);
      if (current && !request.headers.Authorization) request.headers.Authorization = `Bearer ${current}`;
      return request;
    },
  });
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = input.value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  form.hidden = true;
  load();
});

load();
