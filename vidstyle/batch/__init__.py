"""Many videos in one run: inputs, a resumable manifest, the paint job, and the run itself.

* ``inputs``: files, folders (searched recursively for videos), globs and URLs -> ``Source``s;
* ``manifest``: ``OUT/vidstyle-manifest.json``, each input's status, output and what it was painted from;
* ``job``: ``StylizeJob``, the picklable painting of ``vidstyle run``, and ``paint_item``;
* ``run``: ``run_batch``, in this process or as Ray tasks (``vidstyle.executors``).
"""
from .inputs import VIDEO_EXTENSIONS, expand_inputs, find_inputs, is_video_file, probe_frames
from .job import StylizeJob, paint_item
from .manifest import MANIFEST_NAME, Manifest, earlier_outputs
from .run import BatchProgress, BatchResult, run_batch

__all__ = ["BatchProgress", "BatchResult", "MANIFEST_NAME", "Manifest", "StylizeJob", "VIDEO_EXTENSIONS",
           "earlier_outputs", "expand_inputs", "find_inputs", "is_video_file", "paint_item", "probe_frames",
           "run_batch"]
