"""Conformance: every file in ../shared/realdata/dicom either decodes or fails with a named reason.

The expected outcome of each file is written out below (after inspecting each one, see
MANIFEST.tsv), so a regression in any decoder path changes this table instead of passing
silently. `ok` rows give (width, height, frames in the object, PIL mode of the PNG).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from curate.errors import InputError
from curate.parse.dicom import decode_dicom

pytestmark = pytest.mark.realdata

# Why the non-ok rows fail:
# - missing_pixel_data: SR documents, DICOMDIR indexes, the pixel-less TINY_ALPHA CT instances and
#   nibabel's csa_slice_norm.dcm (header-only MR) have no image to decode.
# - corrupt_pixel_data: JPEG-lossy.dcm (libjpeg: misplaced marker; only GDCM reads it) and
#   JPEG2000-embedded-sequence-delimiter.dcm (broken J2K code stream).
# - truncated_dicom: MR_truncated.dcm has 8130 of 8192 pixel bytes.
# - not_dicom: no_meta.dcm starts one byte off (a stray 0x20 before the first tag), so even a
#   forced read finds no known element.
# OT-PAL-8-face.dcm has no file meta at all: the transfer syntax is inferred from the encoding
# pydicom read it with (implicit VR little endian), and it decodes.
EXPECTED: dict[str, object] = {
    "highdicom/ct_image.dcm": ("ok", 128, 128, 1, "L"),
    "highdicom/dx_image.dcm": ("ok", 211, 169, 1, "L"),
    "highdicom/seg_image_cr_binary.dcm": ("ok", 16, 16, 1, "L"),
    "highdicom/seg_image_ct_binary.dcm": ("ok", 16, 16, 3, "L"),
    "highdicom/sm_image.dcm": ("ok", 10, 10, 25, "RGB"),
    "highdicom/sr_document.dcm": "missing_pixel_data",
    "nibabel/0.dcm": ("ok", 256, 256, 1, "L"),
    "nibabel/1.dcm": ("ok", 256, 256, 1, "L"),
    "nibabel/csa_slice_norm.dcm": "missing_pixel_data",
    "nibabel/decimal_rescale.dcm": ("ok", 128, 96, 1, "L"),
    "nibabel/philips_mprage.dcm.gz": ("ok", 256, 256, 176, "L"),
    "nibabel/siemens_dwi_0.dcm.gz": ("ok", 896, 896, 1, "L"),
    "nibabel/siemens_dwi_1000.dcm.gz": ("ok", 896, 896, 1, "L"),
    "nibabel/slicethickness_empty_string.dcm": ("ok", 384, 384, 1, "L"),
    "pydicom/693_J2KI.dcm": ("ok", 512, 512, 1, "L"),
    "pydicom/CT_small.dcm": ("ok", 128, 128, 1, "L"),
    "pydicom/ExplVR_BigEnd.dcm": ("ok", 80, 60, 1, "RGB"),
    "pydicom/GDCMJ2K_TextGBR.dcm": ("ok", 400, 400, 1, "RGB"),
    "pydicom/J2K_pixelrep_mismatch.dcm": ("ok", 512, 512, 1, "L"),
    "pydicom/JPEG-lossy.dcm": "corrupt_pixel_data",
    "pydicom/JPEG2000-embedded-sequence-delimiter.dcm": "corrupt_pixel_data",
    "pydicom/JPEG2000.dcm": ("ok", 256, 1024, 1, "L"),
    "pydicom/JPEGLSNearLossless_08.dcm": ("ok", 10, 45, 1, "L"),
    "pydicom/JPEGLSNearLossless_16.dcm": ("ok", 10, 50, 1, "L"),
    "pydicom/JPGExtended.dcm": ("ok", 256, 1024, 1, "L"),
    "pydicom/MR_small.dcm": ("ok", 64, 64, 1, "L"),
    "pydicom/MR_small_RLE.dcm": ("ok", 64, 64, 1, "L"),
    "pydicom/MR_small_bigendian.dcm": ("ok", 64, 64, 1, "L"),
    "pydicom/MR_small_expb.dcm": ("ok", 64, 64, 1, "L"),
    "pydicom/MR_small_implicit.dcm": ("ok", 64, 64, 1, "L"),
    "pydicom/MR_small_jp2klossless.dcm": ("ok", 64, 64, 1, "L"),
    "pydicom/MR_small_jpeg_ls_lossless.dcm": ("ok", 64, 64, 1, "L"),
    "pydicom/MR_small_padded.dcm": ("ok", 64, 64, 1, "L"),
    "pydicom/MR_truncated.dcm": "truncated_dicom",
    "pydicom/SC_jpeg_no_color_transform.dcm": ("ok", 256, 256, 1, "RGB"),
    "pydicom/SC_jpeg_no_color_transform_2.dcm": ("ok", 256, 256, 1, "RGB"),
    "pydicom/SC_rgb_dcmtk_+eb+cr.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_dcmtk_+eb+cy+n1.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_dcmtk_+eb+cy+n2.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_dcmtk_+eb+cy+np.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_dcmtk_+eb+cy+s2.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_dcmtk_+eb+cy+s4.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_gdcm_KY.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_jls_lossy_line.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_jls_lossy_sample.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_jpeg.dcm": ("ok", 256, 256, 1, "RGB"),
    "pydicom/SC_rgb_jpeg_app14_dcmd.dcm": ("ok", 256, 256, 1, "RGB"),
    "pydicom/SC_rgb_jpeg_dcmd.dcm": ("ok", 256, 256, 1, "RGB"),
    "pydicom/SC_rgb_jpeg_dcmtk.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_jpeg_gdcm.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_jpeg_lossy_gdcm.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_rle.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_rle_16bit.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_rle_16bit_2frame.dcm": ("ok", 100, 100, 2, "RGB"),
    "pydicom/SC_rgb_rle_2frame.dcm": ("ok", 100, 100, 2, "RGB"),
    "pydicom/SC_rgb_rle_32bit.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/SC_rgb_rle_32bit_2frame.dcm": ("ok", 100, 100, 2, "RGB"),
    "pydicom/SC_rgb_small_odd.dcm": ("ok", 3, 3, 1, "RGB"),
    "pydicom/SC_rgb_small_odd_big_endian.dcm": ("ok", 3, 3, 1, "RGB"),
    "pydicom/SC_rgb_small_odd_jpeg.dcm": ("ok", 3, 3, 1, "RGB"),
    "pydicom/SC_ybr_full_422_uncompressed.dcm": ("ok", 100, 100, 1, "RGB"),
    "pydicom/dicomdirtests/77654033/CR1/6154": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/77654033/CR2/6247": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/77654033/CR3/6278": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/77654033/CT2/17106": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/77654033/CT2/17136": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/77654033/CT2/17166": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/77654033/CT2/17196": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892001/CT2N/6293": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892001/CT2N/6924": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892001/CT5N/2062": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892001/CT5N/2392": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892001/CT5N/2693": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892001/CT5N/3023": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892001/CT5N/3353": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR1/15820": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR1/4919": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR1/5641": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR2/15970": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR2/4950": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR2/4981": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR2/5011": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR2/6273": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR2/6605": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR2/6935": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR700/4467": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR700/4528": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR700/4558": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR700/4588": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR700/4618": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR700/4648": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/98892003/MR700/4678": ("ok", 16, 16, 1, "L"),
    "pydicom/dicomdirtests/DICOMDIR": "missing_pixel_data",
    "pydicom/dicomdirtests/DICOMDIR-bigEnd": "missing_pixel_data",
    "pydicom/dicomdirtests/DICOMDIR-empty.dcm": "missing_pixel_data",
    "pydicom/dicomdirtests/DICOMDIR-implicit": "missing_pixel_data",
    "pydicom/dicomdirtests/DICOMDIR-nooffset": "missing_pixel_data",
    "pydicom/dicomdirtests/DICOMDIR-nopatient": "missing_pixel_data",
    "pydicom/dicomdirtests/DICOMDIR-reordered": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/DICOMDIR": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000000": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000001": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000002": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000003": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000004": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000005": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000006": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000007": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000008": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000009": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000A": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000B": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000C": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000D": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000E": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000F": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000G": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000H": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000I": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000J": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000K": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000L": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000M": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000N": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000O": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000P": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000Q": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000R": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000S": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000T": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000U": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000V": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000W": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000X": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000Y": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000Z": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000010": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000011": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000012": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000013": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000014": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000015": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000016": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000017": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000018": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000019": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00001A": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00001B": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00001C": "missing_pixel_data",
    "pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00001D": "missing_pixel_data",
    "pydicom/examples_jpeg2k.dcm": ("ok", 640, 480, 1, "RGB"),
    "pydicom/examples_overlay.dcm": ("ok", 484, 300, 1, "L"),
    "pydicom/examples_palette.dcm": ("ok", 800, 350, 1, "RGB"),
    "pydicom/examples_rgb_color.dcm": ("ok", 320, 240, 1, "RGB"),
    "pydicom/examples_ybr_color.dcm": ("ok", 320, 240, 30, "RGB"),
    "pydicom/image_dfl.dcm": ("ok", 512, 512, 1, "L"),
    "pydicom/liver_1frame.dcm": ("ok", 512, 512, 1, "L"),
    "pydicom/liver_expb_1frame.dcm": ("ok", 512, 512, 1, "L"),
    "pydicom/no_meta.dcm": "not_dicom",
    "pydicom/reportsi.dcm": "missing_pixel_data",
    "pydicom/rtdose.dcm": ("ok", 10, 10, 15, "L"),
    "pydicom/rtdose_1frame.dcm": ("ok", 10, 10, 1, "L"),
    "pydicom/rtdose_expb.dcm": ("ok", 10, 10, 15, "L"),
    "pydicom/rtdose_expb_1frame.dcm": ("ok", 10, 10, 1, "L"),
    "pydicom/rtdose_rle.dcm": ("ok", 10, 10, 15, "L"),
    "pydicom/rtdose_rle_1frame.dcm": ("ok", 10, 10, 1, "L"),
    "pydicom/test-SR.dcm": "missing_pixel_data",
    "pydicom_data/693_J2KR.dcm": ("ok", 512, 512, 1, "L"),
    "pydicom_data/693_UNCI.dcm": ("ok", 512, 512, 1, "L"),
    "pydicom_data/JPEG-LL.dcm": ("ok", 256, 1024, 1, "L"),
    "pydicom_data/JPEG2000_UNC.dcm": ("ok", 256, 1024, 1, "L"),
    "pydicom_data/JPGLosslessP14SV1_1s_1f_8b.dcm": ("ok", 1024, 768, 1, "L"),
    "pydicom_data/MR-SIEMENS-DICOM-WithOverlays.dcm": ("ok", 484, 484, 1, "L"),
    "pydicom_data/MR2_J2KI.dcm": ("ok", 1024, 1024, 1, "L"),
    "pydicom_data/MR2_J2KR.dcm": ("ok", 1024, 1024, 1, "L"),
    "pydicom_data/MR2_UNCI.dcm": ("ok", 1024, 1024, 1, "L"),
    "pydicom_data/OBXXXX1A.dcm": ("ok", 800, 600, 1, "RGB"),
    "pydicom_data/OBXXXX1A_2frame.dcm": ("ok", 800, 600, 2, "RGB"),
    "pydicom_data/OBXXXX1A_expb.dcm": ("ok", 800, 600, 1, "RGB"),
    "pydicom_data/OBXXXX1A_expb_2frame.dcm": ("ok", 800, 600, 2, "RGB"),
    "pydicom_data/OBXXXX1A_rle.dcm": ("ok", 800, 600, 1, "RGB"),
    "pydicom_data/OBXXXX1A_rle_2frame.dcm": ("ok", 800, 600, 2, "RGB"),
    "pydicom_data/OT-PAL-8-face.dcm": ("ok", 640, 480, 1, "RGB"),
    "pydicom_data/RG1_J2KI.dcm": ("ok", 1841, 1955, 1, "L"),
    "pydicom_data/RG1_J2KR.dcm": ("ok", 1841, 1955, 1, "L"),
    "pydicom_data/RG3_J2KI.dcm": ("ok", 1760, 1760, 1, "L"),
    "pydicom_data/RG3_J2KR.dcm": ("ok", 1760, 1760, 1, "L"),
    "pydicom_data/US1_J2KI.dcm": ("ok", 640, 480, 1, "RGB"),
    "pydicom_data/US1_J2KR.dcm": ("ok", 640, 480, 1, "RGB"),
    "pydicom_data/US1_UNCI.dcm": ("ok", 640, 480, 1, "RGB"),
    "pydicom_data/bad_sequence.dcm": ("ok", 512, 512, 1, "L"),
    "pydicom_data/color-pl.dcm": ("ok", 256, 120, 1, "RGB"),
    "pydicom_data/color-px.dcm": ("ok", 256, 120, 1, "RGB"),
    "pydicom_data/eCT_Supplemental.dcm": ("ok", 512, 512, 2, "L"),
    "pydicom_data/emri_small.dcm": ("ok", 64, 64, 10, "L"),
    "pydicom_data/emri_small_RLE.dcm": ("ok", 64, 64, 10, "L"),
    "pydicom_data/emri_small_big_endian.dcm": ("ok", 64, 64, 10, "L"),
    "pydicom_data/emri_small_jpeg_2k_lossless.dcm": ("ok", 64, 64, 10, "L"),
    "pydicom_data/emri_small_jpeg_ls_lossless.dcm": ("ok", 64, 64, 10, "L"),
    "pydicom_data/explicit_VR-UN.dcm": ("ok", 512, 512, 1, "L"),
    "pydicom_data/gdcm-US-ALOKA-16.dcm": ("ok", 640, 480, 1, "RGB"),
    "pydicom_data/gdcm-US-ALOKA-16_big.dcm": ("ok", 640, 480, 1, "RGB"),
    "pydicom_data/liver.dcm": ("ok", 512, 512, 3, "L"),
    "pydicom_data/liver_expb.dcm": ("ok", 512, 512, 3, "L"),
    "pydicom_data/mlut_18.dcm": ("ok", 512, 512, 1, "L"),
    "pydicom_data/vlut_04.dcm": ("ok", 512, 512, 1, "L"),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016573.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016574.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016575.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016576.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016577.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016578.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016579.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016580.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016581.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016582.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016583.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016584.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016585.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016586.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016587.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016588.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016589.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016590.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016591.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
    "totalsegmentator_example_ct/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016592.dcm": (
        "ok",
        512,
        512,
        1,
        "L",
    ),
}


def _all_files(root):
    return sorted(p for p in (root / "dicom").rglob("*") if p.is_file())


def test_table_covers_every_file(realdata):
    found = {p.relative_to(realdata / "dicom").as_posix() for p in _all_files(realdata)}
    assert found == set(EXPECTED)


def test_every_file_decodes_or_fails_with_its_reason(realdata):
    outcomes = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about odd-but-readable elements
        for path in _all_files(realdata):
            rel = path.relative_to(realdata / "dicom").as_posix()
            try:
                image = decode_dicom(path.read_bytes())
            except InputError as exc:
                assert str(exc), rel  # every failure says why
                outcomes[rel] = exc.reason
                continue
            png = Image.open(io.BytesIO(image.png))
            png.load()
            assert png.format == "PNG"
            assert png.size == (image.width, image.height), rel
            outcomes[rel] = ("ok", image.width, image.height, image.frames, png.mode)
    mismatched = {k: (outcomes[k], EXPECTED[k]) for k in EXPECTED if outcomes.get(k) != EXPECTED[k]}
    assert mismatched == {}


def _png_array(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_gzip_wrapped_dicom_equals_its_content(realdata):
    import gzip

    wrapped = (realdata / "dicom/nibabel/siemens_dwi_0.dcm.gz").read_bytes()
    assert decode_dicom(wrapped).png == decode_dicom(gzip.decompress(wrapped)).png


def test_monochrome1_is_the_inverse_of_the_same_pixels_as_monochrome2(realdata):
    import pydicom

    path = realdata / "dicom/highdicom/dx_image.dcm"
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    as_mono1 = _png_array(decode_dicom(path.read_bytes()).png).astype(int)
    ds.PhotometricInterpretation = "MONOCHROME2"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    as_mono2 = _png_array(decode_dicom(buffer.getvalue()).png).astype(int)
    assert np.array_equal(as_mono1, 255 - as_mono2)
    assert as_mono2.std() > 0


def test_same_image_in_every_transfer_syntax_decodes_identically(realdata):
    base = realdata / "dicom/pydicom"
    reference = _png_array(decode_dicom((base / "MR_small.dcm").read_bytes(), bit_depth=16).png)
    for name in (
        "MR_small_RLE.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_implicit.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
    ):
        got = _png_array(decode_dicom((base / name).read_bytes(), bit_depth=16).png)
        assert np.array_equal(got, reference), name


def test_window_matches_the_dicom_linear_formula(realdata):
    """PS3.3 C.11.2.1.2.1 LINEAR window, computed here by hand, against the 16-bit output."""
    import pydicom

    path = realdata / "dicom/pydicom_data/MR2_UNCI.dcm"
    ds = pydicom.dcmread(path)
    assert "VOILUTFunction" not in ds and "VOILUTSequence" not in ds
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    fraction = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    expected = np.rint(fraction * 65535)
    got = _png_array(decode_dicom(path.read_bytes(), bit_depth=16).png).astype(float)
    assert np.abs(got - expected).max() <= 1  # rounding only
    assert len(np.unique(got)) > 100


def test_multiframe_takes_middle_frame_by_default(realdata):
    data = (realdata / "dicom/pydicom_data/emri_small.dcm").read_bytes()
    default = decode_dicom(data)
    assert default.frames == 10
    assert default.metadata["frame_index"] == 5
    assert decode_dicom(data, frame=5).png == default.png
    assert decode_dicom(data, frame=0).png != default.png


def test_palette_colour_becomes_rgb(realdata):
    image = decode_dicom((realdata / "dicom/pydicom/examples_palette.dcm").read_bytes())
    arr = _png_array(image.png)
    assert arr.shape == (image.height, image.width, 3)
    assert image.bit_depth == 8
    assert len({tuple(px) for px in arr.reshape(-1, 3)[::97]}) > 10  # real colours, not grey


def test_file_without_meta_infers_its_transfer_syntax(realdata):
    image = decode_dicom((realdata / "dicom/pydicom_data/OT-PAL-8-face.dcm").read_bytes())
    assert image.metadata["transfer_syntax_inferred"] is True
    assert image.metadata["transfer_syntax_uid"] == "1.2.840.10008.1.2"


@pytest.mark.parametrize(
    "name", ["pydicom_data/eCT_Supplemental.dcm", "nibabel/philips_mprage.dcm.gz"]
)
def test_enhanced_multiframe_uses_functional_group_luts(realdata, name):
    """Enhanced CT/MR keep Rescale and Window per frame (or shared): they must be applied."""
    import gzip

    import pydicom
    from pydicom.pixels import pixel_array

    data = (realdata / "dicom" / name).read_bytes()
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    ds = pydicom.dcmread(io.BytesIO(raw))
    frames = int(ds.NumberOfFrames)
    index = frames // 2

    def group_value(sequence, keyword):
        for groups, i in (
            ("PerFrameFunctionalGroupsSequence", index),
            ("SharedFunctionalGroupsSequence", 0),
        ):
            item = ds[groups][i] if groups in ds else None
            if item is not None and sequence in item and keyword in item[sequence][0]:
                return float(item[sequence][0][keyword].value)
        raise AssertionError(f"{keyword} not found")

    slope = group_value("PixelValueTransformationSequence", "RescaleSlope")
    intercept = group_value("PixelValueTransformationSequence", "RescaleIntercept")
    center = group_value("FrameVOILUTSequence", "WindowCenter")
    width = group_value("FrameVOILUTSequence", "WindowWidth")
    values = pixel_array(ds, index=index) * slope + intercept
    expected = np.rint(np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 255)
    got = _png_array(decode_dicom(data).png).astype(float)
    assert np.abs(got - expected).max() <= 1
