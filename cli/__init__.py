"""The ``orchestrator`` command line: the services, the plugin tools and a submitter's
commands. ``main.py`` builds the parser from the command modules beside it."""
