"""museval (BSSEval v4) scoring of separations, aggregates, tables and plots."""
