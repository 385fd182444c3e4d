"""Test support shared by the tests and the benchmarks (``bench/`` imports ``tests.support``): stream publishers
and an RTSP relay (:mod:`~tests.support.publish`), a GStreamer RTSP camera (:mod:`~tests.support.rtsp_camera`), a
recording stream sink (:mod:`~tests.support.stream_sink`), a real S3-compatible server
(:mod:`~tests.support.seaweedfs`) and the hostile URL table (:mod:`~tests.support.hostile_urls`). Never imported by
the product."""
