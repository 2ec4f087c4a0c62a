"""Local-only tooling for Support Agent: the CLI, the embedded AWS emulation, the demo and the dev server.

Nothing here ships in the Lambda layer (it depends on moto).
"""
