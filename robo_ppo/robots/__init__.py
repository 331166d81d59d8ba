"""The robot layer: a robot is data (``description``), bound to its MuJoCo model (``model``), and the
physics seam engines implement (``physics``)."""
