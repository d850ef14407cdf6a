"""Store vs recompute: the memory plan of a run (`plan`), rematerialization (`remat`), the
budget search (`search`), `gtool memory`'s report (`report`) and its SVG plots (`svg`)."""
