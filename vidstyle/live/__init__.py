"""Live mode: camera or file in, preview window, virtual camera, network feed and recording out."""
