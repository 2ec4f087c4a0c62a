"""Support Agent shared library: the logic behind every Lambda handler (shipped as the common layer)."""

__version__ = "0.1.0"
