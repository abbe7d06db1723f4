"""See what the agent learned: open-loop dreams, evaluation videos and learning curves.

- `reverie.viz.dream`: the world model's open-loop predictions (DreamerV3 paper, Figure 4).
- `reverie.viz.video`: streaming GIF / MP4 writers for evaluation episodes.
- `reverie.viz.plot`: return curves over seeds against the published DreamerV3 scores.
"""

from reverie.viz.dream import Dream, dream, image_grid, video_frames, video_tensor, write_dream
from reverie.viz.plot import plot_runs

__all__ = [
    "Dream",
    "dream",
    "image_grid",
    "plot_runs",
    "video_frames",
    "video_tensor",
    "write_dream",
]
