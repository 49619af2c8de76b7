"""vidstyle: turn videos and webcam feeds into moving paintings."""
from .api import RunResult, load_model, stylize_image, stylize_video
from .errors import IncompleteInput, VidstyleError

__version__ = "0.1.0"
__all__ = ["IncompleteInput", "RunResult", "VidstyleError", "load_model", "stylize_image", "stylize_video"]
