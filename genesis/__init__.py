"""Genesis: face recognition and people analytics for camera streams."""

__version__ = "0.1.0"
