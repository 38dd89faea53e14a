"""Training data: a sharded audio cache (`prepare`), on-the-fly noisy/clean mixing, and a built-in
synthetic default set so training runs without any user data."""

from dfnet4.data.audio import SAMPLE_RATE, list_audio_files, read_audio
from dfnet4.data.cache import AudioCache, CacheError
from dfnet4.data.loader import BatchLoader
from dfnet4.data.mixer import MixConfig, Mixer

__all__ = [
    "SAMPLE_RATE",
    "AudioCache",
    "BatchLoader",
    "CacheError",
    "MixConfig",
    "Mixer",
    "list_audio_files",
    "read_audio",
]
