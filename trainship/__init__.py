"""trainship: POST a training script, get back a live inference URL."""

__version__ = "0.1.0"
