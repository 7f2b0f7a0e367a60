"""The API's service layer: queries and logic the routers call (no HTTP in here)."""
