"""Python stubs generated from proto/ at build time (`make proto`); never committed."""
