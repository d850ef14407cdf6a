"""Store vs recompute (docs/memory.md): the memory plan of a run (`plan`, `cost`),
rematerialization as a graph transform (`remat`), the `budget=` search (`search`, and `chain`
for the dynamic program on chains), `gtool memory`'s report (`report`) and its SVG plots (`svg`)."""
