"""The forwarding function's core, shared by the Azure Function and the local server."""
