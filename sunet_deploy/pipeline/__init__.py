"""The one image pipeline: image file -> network input -> network output -> mask (numpy, OpenCV, Pillow; torch-free).

Every path from an image to a mask goes through these modules: predict (whole images and the
windows of `sunet_deploy.tiling`), evaluation, export verification and calibration, Triton's image
models, parity.

    images      read image files (any OpenCV format, 16-bit, gray, alpha) turned as their EXIF says
    geometry    letterbox geometry and the resizes: the one bilinear resize of float data
    normalize   the one normalisation (x - 255 mean) / (255 std), and image(s) -> NCHW input batch
    masks       the one output-to-mask rule: argmax or labels, mask dtype, back to the image's size
    palettes    colour palettes, label PNGs, colourised masks and overlays

Class lists live with their datasets (`sunet_deploy.data.voc`, `.cityscapes`).
"""
