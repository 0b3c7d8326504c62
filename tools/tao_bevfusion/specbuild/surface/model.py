"""`model.*` of the 5.5 BEVFusion experiment (contract §2.9, model summary)."""

from typing import Any, Literal

from tao_bevfusion.specbuild.surface.base import Node, field

SWIN_TINY_URL = "https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth"
BN_1E3 = {"type": "BN", "eps": 0.001, "momentum": 0.01}


class DataPreprocessor(Node):
    type: str = field("Det3DDataPreprocessor", "mmdet3d data preprocessor class.")
    mean: list[float] = field([123.675, 116.28, 103.53], "Image mean (RGB) for normalisation.")
    std: list[float] = field([58.395, 57.12, 57.375], "Image std (RGB) for normalisation.")
    bgr_to_rgb: bool = field(False, "Convert BGR images to RGB before normalising.")
    pad_size_divisor: int = field(32, "Pad images so both sides divide by this.", ge=1)
    voxelize_cfg: dict[str, Any] = field(
        {"max_num_points": 10, "max_voxels": [120000, 160000], "voxelize_reduce": True},
        "Hard voxelisation settings (free-form dict; merged key by key).",
    )


class ImgBackbone(Node):
    type: str = field("mmdet.SwinTransformer", "Camera backbone class.")
    embed_dims: int = field(96, "Swin embedding width.", ge=1)
    depths: list[int] = field([2, 2, 6, 2], "Blocks per Swin stage.")
    num_heads: list[int] = field([3, 6, 12, 24], "Attention heads per Swin stage.")
    window_size: int = field(7, "Swin attention window.", ge=1)
    mlp_ratio: int = field(4, "MLP hidden ratio.", ge=1)
    qkv_bias: bool = field(True, "Use a bias in the qkv projection.")
    qk_scale: str | None = field(None, "Override of the qk scale (null = default).")
    drop_rate: float = field(0.0, "Dropout rate.", ge=0, le=1)
    attn_drop_rate: float = field(0.0, "Attention dropout rate.", ge=0, le=1)
    drop_path_rate: float = field(0.2, "Stochastic depth rate.", ge=0, le=1)
    patch_norm: bool = field(True, "Normalise after patch embedding.")
    out_indices: list[int] = field([1, 2, 3], "Stages whose features feed the neck.")
    with_cp: bool = field(False, "Gradient checkpointing (saves memory, costs time).")
    convert_weights: bool = field(True, "Convert official Swin weights to the mmdet layout.")
    init_cfg: dict[str, Any] | None = field(
        {"type": "Pretrained", "checkpoint": SWIN_TINY_URL},
        "Swin weight initialisation. The 5.5 default downloads from GitHub at train start; `{}` still "
        "downloads (dict merge). Use null (no download) or {type: Pretrained, checkpoint: <local .pth>}.",
    )


class ImgNeck(Node):
    type: str = field("GeneralizedLSSFPN", "Camera neck class.")
    in_channels: list[int] = field([192, 384, 768], "Input channels per backbone stage.")
    out_channels: int = field(256, "Neck output channels.", ge=1)
    start_level: int = field(0, "First backbone level used.", ge=0)
    num_outs: int = field(3, "Number of neck outputs.", ge=0)
    norm_cfg: dict[str, Any] = field(
        {"type": "BN2d", "requires_grad": True}, "Neck normalisation (dict)."
    )
    act_cfg: dict[str, Any] = field({"type": "ReLU", "inplace": True}, "Neck activation (dict).")
    upsample_cfg: dict[str, Any] = field(
        {"mode": "bilinear", "align_corners": False}, "Neck upsampling (dict)."
    )


class ViewTransform(Node):
    type: Literal["DepthLSSTransform", "LSSTransform"] = field(
        "DepthLSSTransform", "Camera-to-BEV transform."
    )
    in_channels: int = field(256, "Input channels.", ge=1)
    out_channels: int = field(80, "BEV camera feature channels.", ge=1)
    image_size: list[int] = field([256, 704], "Network input image size [H, W].")
    feature_size: list[int] = field([32, 88], "Image feature map size [H, W].")
    xbound: list[float] = field(
        [-54.0, 54.0, 0.3], "BEV x range and step [min, max, step] in metres."
    )
    ybound: list[float] = field(
        [-54.0, 54.0, 0.3], "BEV y range and step [min, max, step] in metres."
    )
    zbound: list[float] = field([-10.0, 10.0, 20.0], "BEV z range and step.")
    dbound: list[float] = field([1.0, 60.0, 0.5], "Depth bins [min, max, step] in metres.")
    downsample: int = field(2, "BEV downsample factor.", ge=1)


class PtsBackbone(Node):
    type: str = field("SECOND", "LiDAR BEV backbone class.")
    in_channels: int = field(256, "Input channels.", ge=1)
    out_channels: list[int] = field([128, 256], "Output channels per stage.")
    layer_nums: list[int] = field([5, 5], "Layers per stage.")
    layer_strides: list[int] = field([1, 2], "Stride per stage.")
    norm_cfg: dict[str, Any] = field(BN_1E3, "Normalisation (dict).")
    conv_cfg: dict[str, Any] = field({"type": "Conv2d", "bias": False}, "Convolution (dict).")


class PtsMiddleEncoder(Node):
    type: str = field("BEVFusionSparseEncoder", "Sparse LiDAR encoder class.")
    in_channels: int = field(4, "Input point features.", ge=1)
    sparse_shape: list[int] = field(
        [1440, 1440, 41], "Sparse voxel grid [X, Y, Z]; must match the geometry."
    )
    order: list[str] = field(["conv", "norm", "act"], "Order inside each conv module.")
    norm_cfg: dict[str, Any] = field(
        {"type": "BN1d", "eps": 0.001, "momentum": 0.01}, "Normalisation (dict)."
    )
    block_type: str = field("basicblock", "Residual block type.")
    # These two exist in the 5.5 dataclass without metadata; their defaults are not published in the
    # contract, so we never emit them and leave the container default in force.
    encoder_channels: list[list[int]] | None = field(
        None, "Per-stage channels (null = container default)."
    )
    encoder_paddings: list[list[Any]] | None = field(
        None, "Per-stage paddings (null = container default)."
    )


class PtsNeck(Node):
    type: str = field("SECONDFPN", "LiDAR neck class.")
    in_channels: list[int] = field([128, 256], "Input channels.")
    out_channels: list[int] = field([256, 256], "Output channels.")
    upsample_strides: list[int] = field([1, 2], "Upsample stride per input.")
    norm_cfg: dict[str, Any] = field(BN_1E3, "Normalisation (dict).")
    upsample_cfg: dict[str, Any] = field({"type": "deconv", "bias": False}, "Upsampling (dict).")
    use_conv_for_no_stride: bool = field(True, "Use a conv where the stride is 1.")


class FusionLayer(Node):
    type: str = field("ConvFuser", "Camera/LiDAR BEV fuser class.")
    in_channels: list[int] = field([80, 256], "Camera and LiDAR BEV channels.")
    out_channels: int = field(256, "Fused channels.", ge=1)


class BBoxCoder(Node):
    type: Literal["TAO3DBBoxCoder"] = field("TAO3DBBoxCoder", "Box coder class.")
    score_threshold: float = field(0.0, "Minimum score kept by the decoder.", ge=0, le=1)
    code_size: int = field(12, "Box code length.", ge=1)


class AttnCfg(Node):
    embed_dims: int = field(128, "Attention width.", ge=1)
    num_heads: int = field(8, "Attention heads.", ge=1)
    dropout: float = field(0.1, "Attention dropout.", ge=0, le=1)


class DecoderLayer(Node):
    type: str = field("TransformerDecoderLayer", "Decoder layer class.")
    self_attn_cfg: AttnCfg = field(AttnCfg, "Self-attention.")
    cross_attn_cfg: AttnCfg = field(AttnCfg, "Cross-attention.")
    ffn_cfg: dict[str, Any] = field(
        {
            "embed_dims": 128,
            "feedforward_channels": 256,
            "num_fcs": 2,
            "ffn_drop": 0.1,
            "act_cfg": {"type": "ReLU", "inplace": True},
        },
        "Feed-forward network (dict).",
    )
    norm_cfg: dict[str, Any] = field({"type": "LN"}, "Normalisation (dict).")
    pos_encoding_cfg: dict[str, Any] = field(
        {"input_channel": 2, "num_pos_feats": 128}, "Positional encoding."
    )


class BBoxHead(Node):
    type: Literal["BEVFusionHead"] = field("BEVFusionHead", "Detection head class.")
    num_proposals: int = field(200, "Object queries.", ge=1)
    auxiliary: bool = field(True, "Auxiliary losses.")
    in_channels: int = field(512, "Input channels.", ge=1)
    hidden_channel: int = field(128, "Hidden channels.", ge=1)
    num_classes: int = field(1, "Classes; 5.5 KITTI trains `person` only.", ge=1)
    nms_kernel_size: int = field(3, "Heatmap NMS kernel.", ge=1)
    bn_momentum: float = field(0.1, "BatchNorm momentum.", ge=0, le=1)
    num_decoder_layers: int = field(1, "Decoder layers.", ge=1)
    out_size_factor: int = field(8, "BEV grid / head feature ratio.", ge=1)
    nms_type: str | None = field(None, "NMS type (null = none).")
    bbox_coder: BBoxCoder = field(BBoxCoder, "Box coder.")
    decoder_layer: DecoderLayer = field(DecoderLayer, "Transformer decoder layer.")
    code_weights: list[float] = field([1.0] * 12, "Per-component box loss weights.")
    assigner: dict[str, Any] = field(
        {
            "type": "HungarianAssigner3D",
            "iou_calculator": {"type": "BboxOverlaps3D", "coordinate": "lidar"},
            "cls_cost": {
                "type": "mmdet.FocalLossCost",
                "gamma": 2.0,
                "alpha": 0.25,
                "weight": 0.15,
            },
            "reg_cost": {"type": "BBoxBEVL1Cost", "weight": 0.25},
            "iou_cost": {"type": "IoU3DCost", "weight": 0.25},
        },
        "Target assigner (dict).",
    )
    common_heads: dict[str, Any] = field(
        {"center": [2, 2], "height": [1, 2], "dim": [3, 2], "rot": [6, 2]},
        "Regression heads (dict).",
    )
    loss_cls: dict[str, Any] = field(
        {
            "type": "mmdet.FocalLoss",
            "use_sigmoid": True,
            "gamma": 2.0,
            "alpha": 0.25,
            "reduction": "mean",
            "loss_weight": 1.0,
        },
        "Classification loss (dict).",
    )
    loss_heatmap: dict[str, Any] = field(
        {"type": "mmdet.GaussianFocalLoss", "reduction": "mean", "loss_weight": 1.0},
        "Heatmap loss (dict).",
    )
    loss_bbox: dict[str, Any] = field(
        {"type": "mmdet.L1Loss", "reduction": "mean", "loss_weight": 0.25},
        "Box regression loss (dict).",
    )


class ModelConfig(Node):
    type: Literal["BEVFusion"] = field("BEVFusion", "Detector class.")
    point_cloud_range: list[float] = field(
        [0, -40, -3, 70.4, 40, 1], "LiDAR range [xmin, ymin, zmin, xmax, ymax, zmax] in metres."
    )
    voxel_size: list[float] = field([0.05, 0.05, 0.1], "Voxel size [x, y, z] in metres.")
    post_center_range: list[float] = field(
        [-61.2, -61.2, -20, 61.2, 61.2, 20], "Kept box centre range."
    )
    grid_size: list[int] = field(
        [1440, 1440, 41], "Voxel grid [X, Y, Z]; must match range / voxel size."
    )
    data_preprocessor: DataPreprocessor = field(DataPreprocessor, "Input preprocessing.")
    img_backbone: ImgBackbone = field(ImgBackbone, "Camera backbone (Swin-T).")
    img_neck: ImgNeck = field(ImgNeck, "Camera neck.")
    view_transform: ViewTransform = field(ViewTransform, "Camera-to-BEV view transform.")
    pts_voxel_encoder: dict[str, Any] = field(
        {"type": "HardSimpleVFE", "num_features": 4}, "Voxel encoder."
    )
    pts_middle_encoder: PtsMiddleEncoder = field(PtsMiddleEncoder, "Sparse LiDAR encoder.")
    pts_backbone: PtsBackbone = field(PtsBackbone, "LiDAR BEV backbone.")
    pts_neck: PtsNeck = field(PtsNeck, "LiDAR neck.")
    fusion_layer: FusionLayer = field(FusionLayer, "BEV fuser.")
    bbox_head: BBoxHead = field(BBoxHead, "Detection head.")
