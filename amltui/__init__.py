"""amltui: terminal experiment manager for adversarial metric learning."""

__version__ = "0.1.0"
