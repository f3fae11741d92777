"""Registry clients (one package per registry), the errors they raise, and the shared request budget."""
