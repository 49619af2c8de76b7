"""Painting without PyTorch: the CPU path of the light install (``pip install vidstyle``, no extras).

* ``graph``: the style networks (bundled, user-trained and the picture network) built as OpenVINO graphs straight
  from their ``.safetensors`` weights, and the one compiled model per frame size that takes uint8 frames and gives
  uint8 paintings (resize, padding, the network, resize back, colour, strength);
* ``stabilizer``: the flow-guided stabiliser of ``vidstyle.temporal`` in NumPy and OpenCV;
* ``model`` and ``painter``: a model file read with NumPy, and the painter the pipeline, ``image`` and ``live`` use.

Nothing here imports torch; ``vidstyle.torchless`` tells whether a run takes this path.
"""
