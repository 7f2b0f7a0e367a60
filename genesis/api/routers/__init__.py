"""One router per area; each is a thin HTTP layer over ``genesis.api.services``."""
