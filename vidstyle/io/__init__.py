"""Sources and sinks: video files and streams (PyAV), still images (OpenCV)."""
