"""Application services over the stages and adapters: alert delivery, rollups, heatmaps, enrollment."""
