"""Layer 3: the one place that reads driving recordings into frames + labels.

Every recording format is read here, by one module per format; ``data_prep`` (recordings ->
training datasets) and the overlay's sources (:mod:`vbp_live.io.bag_source`) both use these
readers and never read a recording format themselves; :class:`vbp_live.io.recording_source.RecordingFrameSource`
plays any of them with ground truth.

=========================  ==============================  ======================================
kind                       module                          reader
=========================  ==============================  ======================================
``bag``                    :mod:`.bag` (+ :mod:`.bagscan`,  :class:`~.bag.BagRecording`
                           :mod:`.bagreport`,
                           :mod:`.bagrecords`,
                           :mod:`.rosmsg`)
``dump``                   :mod:`.dump`                    :class:`~.dump.DumpRecording`
``sim``                    :mod:`.simlog`                  :class:`~.simlog.SimLogRecording`
``comma2k19``              :mod:`.comma2k19`               :class:`~.comma2k19.CommaRecording`
``tub``                    :mod:`.tub` (+ :mod:`.jsonlines`) :class:`~.tub.TubRecording`
``folder``                 :mod:`.folder`                  :class:`~.folder.FolderRecording`
=========================  ==============================  ======================================

Shared parts: :mod:`.base` (the :class:`~.base.Recording` interface: a cheap first pass
:meth:`~.base.Recording.scan` of timestamps and measurements, then
:meth:`~.base.Recording.payloads` of the encoded images), :mod:`.images` (payload decoding),
:mod:`.options` (what a reader may be told: camera, steering topic, simulator scale, label
synchronization, tub and frame-folder units), :mod:`.labels` (labels put onto the frame stamps),
:mod:`.csvrows` (CSV reading with line numbers in errors), :mod:`.jsonlines` (JSON records with
line numbers in errors).

Adding a format: write ``<format>.py`` with a
:class:`~.base.Recording` subclass, and add its detection to :func:`.formats.open_recording`,
the one dispatcher::

    from vbp_live.recordings.formats import open_recording
    from vbp_live.recordings.options import RecordingOptions

    rec = open_recording(["drive.bag"], RecordingOptions())
    scan = rec.scan()                                    # stamps + measurements, no pixels
    for ordinal, payload in rec.payloads(wanted): ...    # encoded images of wanted frames
"""
