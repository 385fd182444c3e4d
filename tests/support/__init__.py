"""Test support shared by the tests and the benchmarks (``bench/`` imports ``tests.support``): stream publishers
and an RTSP relay (:mod:`~tests.support.publish`), a recording stream sink (:mod:`~tests.support.stream_sink`)
and a real S3-compatible server (:mod:`~tests.support.seaweedfs`). Never imported by the product."""
