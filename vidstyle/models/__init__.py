"""Networks, model files and the style registry."""
from .files import StyleModel, load_model, save_model
from .registry import list_styles, resolve
from .transformer import ARCHS, ArchConfig, TransformerNet, arch_config

__all__ = ["ARCHS", "ArchConfig", "StyleModel", "TransformerNet", "arch_config", "list_styles",
           "load_model", "resolve", "save_model"]
