"""aemon's monitoring: store/ (lake, ingest, warehouse), models/ (bundle, fitting, gate,
registry), alerting/ (scoring, incidents), evaluation/ (metrics, labels, benchmarks);
errors.py holds the named errors every wing raises."""
