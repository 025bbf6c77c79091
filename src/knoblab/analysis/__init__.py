"""Analysis of sweep records: E1 stage decomposition, E2 Pareto fronts, E3 latency estimator."""
