// A form generated from a job type's JSON Schema (as pydantic writes it). Fields of
// kinds it knows get inputs; anything else is edited as JSON. The server stays the
// judge of validity (the form is `novalidate`): its 422 errors are shown by the
// fields their paths name.

import { h, replace } from "./dom.js";

let formCount = 0;

function resolve(schema, root) {
  let current = schema ?? {};
  for (let depth = 0; depth < 20; depth++) {
    if (current.$ref?.startsWith("#/$defs/")) {
      const { $ref, ...rest } = current;
      const name = decodeURIComponent($ref.slice("#/$defs/".length));
      current = { ...(root.$defs?.[name] ?? {}), ...rest };
    } else if (Array.isArray(current.allOf) && current.allOf.length === 1) {
      const { allOf, ...rest } = current;
      current = { ...allOf[0], ...rest };
    } else {
      return current;
    }
  }
  return current;
}

/** The field's schema without a `null` alternative, and whether null was allowed. */
function unwrapNullable(schema, root) {
  const resolved = resolve(schema, root);
  const options = resolved.anyOf ?? resolved.oneOf;
  if (!Array.isArray(options)) return { schema: resolved, nullable: false };
  const others = options.filter((option) => resolve(option, root).type !== "null");
  if (others.length !== 1 || others.length === options.length) {
    return { schema: resolved, nullable: false };
  }
  const { anyOf, oneOf, ...rest } = resolved;
  return { schema: { ...resolve(others[0], root), ...rest }, nullable: true };
}

function kindOf(schema, root) {
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return "enum";
  if ("const" in schema) return "enum";
  if (schema.type === "string") return "string";
  if (schema.type === "integer") return "integer";
  if (schema.type === "number") return "number";
  if (schema.type === "boolean") return "boolean";
  if (schema.type === "array") {
    const items = resolve(schema.items, root);
    if (items.type === "string" && !items.enum) return "lines";
  }
  return "json";
}

function setBounds(input, schema) {
  const min = schema.minimum ?? schema.exclusiveMinimum;
  const max = schema.maximum ?? schema.exclusiveMaximum;
  if (typeof min === "number") input.min = String(min);
  if (typeof max === "number") input.max = String(max);
}

/** One field: its element, how to read it, and where its errors go. */
function buildField(name, rawSchema, { root, required, idPrefix }) {
  const { schema, nullable } = unwrapNullable(rawSchema, root);
  const kind = kindOf(schema, root);
  const id = `${idPrefix}-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const hasDefault = "default" in schema && schema.default !== null;
  const errorBox = h("div", { class: "field-error", role: "alert", id: `${id}-error` });
  const hints = [];
  if (schema.description) hints.push(schema.description);
  let input;
  let read;

  if (kind === "enum") {
    const values = Array.isArray(schema.enum) ? schema.enum : [schema.const];
    input = h("select", { id, name });
    if (!required) input.append(h("option", { value: "" }, hasDefault ? "(default)" : "(none)"));
    values.forEach((value, index) => {
      const option = h("option", { value: String(index) }, JSON.stringify(value));
      if (hasDefault && JSON.stringify(schema.default) === JSON.stringify(value)) {
        option.selected = true;
      }
      input.append(option);
    });
    read = () => (input.value === "" ? { omit: true } : { value: values[Number(input.value)] });
  } else if (kind === "boolean") {
    input = h("input", { id, name, type: "checkbox", checked: schema.default === true });
    read = () => ({ value: input.checked });
  } else if (kind === "integer" || kind === "number") {
    input = h("input", {
      id,
      name,
      type: "number",
      step: kind === "integer" ? "1" : "any",
      inputmode: kind === "integer" ? "numeric" : "decimal",
    });
    setBounds(input, schema);
    if (hasDefault) input.value = String(schema.default);
    read = () => {
      if (input.validity.badInput) return { error: "enter a number" };
      if (input.value.trim() === "") return { omit: true };
      return { value: Number(input.value) };
    };
  } else if (kind === "string") {
    input = h("input", { id, name, type: "text", autocomplete: "off", spellcheck: "false" });
    if (typeof schema.maxLength === "number") input.maxLength = schema.maxLength;
    if (hasDefault) input.value = String(schema.default);
    read = () => (input.value === "" && !required ? { omit: true } : { value: input.value });
  } else if (kind === "lines") {
    input = h("textarea", { id, name, rows: 3, spellcheck: "false" });
    if (Array.isArray(schema.default)) input.value = schema.default.join("\n");
    hints.push("One item per line; empty lines are left out.");
    read = () => {
      const items = input.value.split(/\r?\n/).filter((line) => line !== "");
      return items.length === 0 && !required ? { omit: true } : { value: items };
    };
  } else {
    input = h("textarea", { id, name, rows: 3, spellcheck: "false", class: "code" });
    if (hasDefault) input.value = JSON.stringify(schema.default, null, 2);
    hints.push("JSON.");
    read = () => {
      if (input.value.trim() === "") return { omit: true };
      try {
        return { value: JSON.parse(input.value) };
      } catch (error) {
        return { error: `not valid JSON: ${error.message}` };
      }
    };
  }
  if (nullable) hints.push("Optional; leave empty for none.");
  input.setAttribute("aria-describedby", `${id}-error`);
  if (required) input.setAttribute("aria-required", "true");

  const label = h(
    "label",
    { for: id },
    schema.title ?? name,
    required ? h("span", { class: "required", title: "required" }, " *") : null,
    h("code", { class: "field-name" }, name),
  );
  const element = h(
    "div",
    { class: `field field-${kind}`, dataset: { field: name } },
    kind === "boolean" ? h("div", { class: "check" }, input, label) : [label, input],
    hints.length ? h("div", { class: "hint" }, hints.join(" ")) : null,
    errorBox,
  );
  return {
    name,
    element,
    read,
    showError(message) {
      errorBox.append(h("div", {}, message));
      element.classList.add("invalid");
      input.setAttribute("aria-invalid", "true");
    },
    clearError() {
      errorBox.replaceChildren();
      element.classList.remove("invalid");
      input.removeAttribute("aria-invalid");
    },
  };
}

function pathText(path) {
  return path.map((part) => (typeof part === "number" ? `[${part}]` : `.${part}`)).join("").slice(1);
}

/**
 * A form for the payload `schema` of `typeName`, plus a max-attempts option.
 * `onSubmit({payload, max_attempts})` is awaited; it may throw, and the form shows
 * the error, by its fields where the detail carries paths.
 */
export function schemaForm(typeName, schema, { onSubmit, maxAttempts }) {
  formCount += 1;
  const idPrefix = `f${formCount}`;
  const root = resolve(schema, schema);
  const properties = root.type === "object" || root.properties ? (root.properties ?? {}) : null;
  const required = new Set(root.required ?? []);
  const summary = h("div", { class: "form-errors", role: "alert" });
  const fields = new Map();

  if (properties === null) {
    // Not an object of fields: the whole payload is written as JSON.
    fields.set("", buildField("payload", { title: "Payload" }, { root, required: true, idPrefix }));
  } else {
    for (const [name, property] of Object.entries(properties)) {
      fields.set(name, buildField(name, property, { root, required: required.has(name), idPrefix }));
    }
  }
  const attempts = buildField(
    "max_attempts",
    {
      type: "integer",
      minimum: 1,
      title: "Max attempts",
      description: `Optional; the type's own is ${maxAttempts}.`,
    },
    { root, required: false, idPrefix: `${idPrefix}-option` },
  );
  const button = h("button", { type: "submit", class: "primary" }, "Submit job");
  const form = h(
    "form",
    { class: "job-form", novalidate: true, dataset: { type: typeName } },
    summary,
    h("fieldset", {}, h("legend", {}, "Payload"), [...fields.values()].map((f) => f.element)),
    h("fieldset", { class: "options" }, h("legend", {}, "Options"), attempts.element),
    h("div", { class: "actions" }, button),
  );

  function clear() {
    summary.replaceChildren();
    for (const field of [...fields.values(), attempts]) field.clearError();
  }

  function showErrors(detail) {
    clear();
    const items = Array.isArray(detail) ? detail : [{ loc: [], msg: String(detail) }];
    const lines = [];
    for (const item of items) {
      const loc = Array.isArray(item.loc) ? item.loc : [];
      const message = item.msg ?? JSON.stringify(item);
      const inPayload = loc[0] === "body" && loc[1] === "payload";
      const rest = inPayload ? loc.slice(2) : loc.slice(1);
      const field = inPayload
        ? (fields.get(String(rest[0] ?? "")) ?? fields.get(""))
        : loc[1] === "max_attempts"
          ? attempts
          : null;
      const where = inPayload ? ["payload", ...rest] : rest;
      if (field) {
        const inner = inPayload && fields.has(String(rest[0])) ? rest.slice(1) : [];
        field.showError(inner.length ? `${pathText(inner)}: ${message}` : message);
      }
      lines.push(h("li", {}, where.length ? h("code", {}, pathText(where)) : null, where.length ? ": " : "", message));
    }
    replace(summary, h("p", {}, "The job was not submitted:"), h("ul", {}, lines));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    const payload = {};
    let wholePayload;
    let invalid = false;
    for (const [name, field] of fields) {
      const got = field.read();
      if (got.error) {
        field.showError(got.error);
        invalid = true;
      } else if (!got.omit) {
        if (name === "") wholePayload = got.value;
        else payload[name] = got.value;
      }
    }
    const option = attempts.read();
    if (option.error) {
      attempts.showError(option.error);
      invalid = true;
    }
    if (invalid) {
      replace(summary, h("p", {}, "Correct the marked fields."));
      return;
    }
    button.disabled = true;
    try {
      await onSubmit({
        payload: wholePayload ?? payload,
        max_attempts: option.omit ? undefined : option.value,
      });
    } catch (error) {
      if (error.name === "AbortError") return;
      showErrors(error.detail ?? error.message);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
