"""Lightning callbacks: coverage, interpolation, plots, export."""
