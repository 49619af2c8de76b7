"""What a style graph looks like from outside, for every builder of it: ``torch_export`` (traced from PyTorch),
``light.graph`` (built from the weights) and ``export`` (the files users get), and ``engines`` (cache keys).
"""
INPUTS = ("image", "mix")
OUTPUT = "stylized"
# Bump when the graph built changes: cached conversions are keyed by it.
GRAPH_VERSION = 4  # 2, 3: upsampling as transposed convs, the RGB output layer in 4 phases; 4: computed by ConvNorm
ONNX_OPSET = 17
