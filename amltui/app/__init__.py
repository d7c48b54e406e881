"""The application core: run records, the store, executors, reports and the operations the front ends share."""
