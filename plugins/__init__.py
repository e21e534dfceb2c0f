"""Built-in plugins, installed under the import name ``orchestrator_plugins``.

They are loaded through the same ``orchestrator.plugins`` entry-point group as third-party
plugins; the core (``orchestrator``) never imports this package.
"""
