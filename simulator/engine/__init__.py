"""The discrete-event engine: a machine of chips and cores, their engines and what an
instruction costs."""
