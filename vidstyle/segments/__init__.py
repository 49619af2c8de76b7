"""One long video painted by several workers: ``plan`` (where to cut), ``parts`` (paint one part, join them),
``run`` (``stylize_segments``, the whole)."""
from .parts import join_parts, paint_part, part_suffix, x264_part_params
from .plan import NoSegments, Part, SegmentPlan, cannot_segment, input_changes, plan_segments, probe_video
from .run import SegmentResult, remove_stale_parts, stylize_segments

__all__ = ["NoSegments", "Part", "SegmentPlan", "SegmentResult", "cannot_segment", "input_changes", "join_parts",
           "paint_part", "part_suffix", "plan_segments", "probe_video", "remove_stale_parts", "stylize_segments",
           "x264_part_params"]
