"""Made on the spot, with no download: media (`media`) and tiny random-weight models (`tiny`), for the demo, the
tests and the benchmarks."""
