"""The pure core: decisions on plain data. No I/O; `now` is always a parameter."""
