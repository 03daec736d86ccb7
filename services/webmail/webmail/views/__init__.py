"""The webmail's pages, one module per area; each module's `setup(app)` adds its routes."""
