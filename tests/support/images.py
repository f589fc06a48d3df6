"""Reading the PNG thumbnails the fragments hold."""
import io

import numpy as np


def png_size(dataset) -> tuple[int, int]:
    """(width, height) of the PNG in an HDF5 dataset of bytes (``uint8``)."""
    from PIL import Image
    data = dataset[()]
    assert dataset.dtype == np.uint8 and data.ndim == 1
    return Image.open(io.BytesIO(data.tobytes())).size
