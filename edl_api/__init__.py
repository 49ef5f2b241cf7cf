"""`edl-api`, the client of the lake's REST API. It speaks HTTP to the API and imports no server
code (DESIGN §9)."""
