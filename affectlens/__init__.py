"""AffectLens: explain human emotion in video, locally."""

__version__ = "0.1.0"
