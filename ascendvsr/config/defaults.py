"""The single configuration tree (yacs). Every key has a one-line comment.

Layering: these defaults <- ``configs/<name>.yaml`` (``--config-file``) <- command-line overrides
(``KEY VALUE`` or ``KEY=VALUE``). Unknown keys are errors naming the key and the closest valid one
(see :mod:`ascendvsr.config`).
"""
from yacs.config import CfgNode as CN

_C = CN()
_C.mode = 'train'                 # train | eval | inference | freeze | convert (CLI --mode wins)
_C.device = 'auto'                # auto | cpu | gpu | npu: where the graph runs (ascendcv/runner/device.py)
_C.device_id = 0                  # device index for gpu / npu (scripts pass DEVICE_ID here)
_C.rank_size = 1                  # number of devices/processes taking part in training
_C.output_dir = 'outputs/edvr'    # checkpoints, logs, TensorBoard, frames, reports, frozen graphs
_C.seed = 0                       # random seed for weights init and data sampling
_C.log_file = 'log.txt'           # log file name inside output_dir ('' = console only)

# ----------------------------------------------------------------------------- model (generic)
_C.model = CN()
_C.model.name = 'EDVR'                   # registered model to build (ascendvsr/zoo/<model>.py)
_C.model.scale = 4                       # super-resolution factor (output size / input size)
_C.model.input_format_dimension = 5      # frozen-graph input: 5 = [N,D,H,W,C]; 4 = [N*D,H,W,C]
_C.model.convert_output_to_uint8 = False  # frozen graph outputs round(clip(y,0,1)*255) as uint8
_C.model.checkpoint = ''                 # checkpoint to load for eval/inference/freeze/resume
_C.model.precision = 'float32'           # eval/inference/freeze: float32 | bfloat16 | int8 (docs/PRECISION.md)

# ----------------------------------------------------------------------------- data
_C.data = CN()
_C.data.dataset_type = 'reds'           # reds (images/NNN/{truth,blur4} + sets/*.json) | vimeo90k
_C.data.data_dir = 'data/reds'          # dataset root
_C.data.gt_subdir = 'truth'             # REDS layout: ground-truth frames folder inside each clip
_C.data.lr_subdir = 'blur4'             # REDS layout: low-resolution input frames folder
_C.data.train_set = 'sets/train.json'   # REDS layout: JSON list of training clip names
_C.data.val_set = 'sets/val.json'       # REDS layout: JSON list of validation clip names (REDS4)
_C.data.vimeo_gt_dir = 'sequences'      # Vimeo90K: GT septuplets folder (relative to data_dir)
_C.data.vimeo_lr_dir = 'sequences_lr'   # Vimeo90K: LR septuplets folder (relative to data_dir)
_C.data.vimeo_train_list = 'sep_trainlist.txt'  # Vimeo90K: training list (lines 00001/0001)
_C.data.vimeo_test_list = 'sep_testlist.txt'    # Vimeo90K: test list
_C.data.crop_size = 64                  # training LR patch size (GT patch = crop_size * scale)
_C.data.interval_list = [1]             # temporal strides to sample neighbours with (BasicSR)
_C.data.random_reverse = False          # randomly reverse the frame order (augmentation)
_C.data.use_flip = True                 # random horizontal flips (augmentation)
_C.data.use_rot = True                  # random vertical flips + 90-degree rotations (augmentation)
_C.data.padding = 'reflection_circle'   # frame-index padding at clip ends for evaluation
_C.data.num_threads = 4                 # parallel readers / decoders in the tf.data pipeline
_C.data.train_data_queue_size = 8       # prefetch queue depth (batches) for training
_C.data.batch_size = 4                  # training batch size per device
_C.data.eval_batch_size = 1             # evaluation/inference batch; NeRV freezes it (-1 = None; VSR: export.batch_size)
_C.data.eval_in_size = [180, 320]       # [H, W] of the LR input for freezing/benchmarks
_C.data.max_eval_frames = -1            # evaluate at most N frames per clip (-1 = all)

# ----------------------------------------------------------------------------- solver
_C.solver = CN()
_C.solver.total_steps = 600000          # training steps (iterations)
_C.solver.print_interval = 20           # log one line every N steps
_C.solver.checkpoint_interval = 5000    # write a checkpoint every N steps (and at the end)
_C.solver.keep_checkpoints = 5          # keep the last K checkpoints
_C.solver.lr = 4e-4                     # base learning rate
_C.solver.beta1 = 0.9                   # Adam beta1
_C.solver.beta2 = 0.99                  # Adam beta2 (EDVR/BasicSR use 0.99)
_C.solver.epsilon = 1e-8                # Adam epsilon
_C.solver.lr_schedule = 'cosine_restart'  # cosine_restart (BasicSR CosineAnnealingRestartLR) | constant | step
_C.solver.periods = [50000, 100000, 150000, 150000, 150000]  # cosine periods (steps), summing to total
_C.solver.restart_weights = [1.0, 0.5, 0.5, 0.5, 0.5]         # lr weight at each restart
_C.solver.eta_min = 1e-7                # minimum learning rate of the cosine schedule
_C.solver.lr_step_size = 1000           # step schedule: multiply lr by lr_gamma every N steps
_C.solver.lr_gamma = 0.5                # step schedule: decay factor
_C.solver.lr_decay_until = 0            # step schedule: no further decay after N steps (0 = never stop)
_C.solver.time_limit_minutes = 0.0      # stop (with a checkpoint) after N minutes of training; 0 = no limit
_C.solver.loss = 'charbonnier'          # charbonnier | l1 | l2
_C.solver.loss_reduction = 'sum'        # sum (EDVR/BasicSR EDVR setting) | mean
_C.solver.charbonnier_eps = 1e-12       # Charbonnier epsilon: sqrt(diff^2 + eps)
_C.solver.distributed = 'none'          # none | horovod | tf (MultiWorkerMirroredStrategy)
_C.solver.scale_lr_by_world_size = False  # multiply lr by the number of workers
_C.solver.collective_timeout = 60       # seconds before a collective with a dead peer fails (tf backend)

# ----------------------------------------------------------------------------- eval
_C.eval = CN()
_C.eval.crop_border = 0             # pixels cropped from each border before PSNR/SSIM
_C.eval.test_y_channel = False      # PSNR/SSIM on the Y channel (MATLAB BT.601) instead of RGB
_C.eval.compute_ssim = True         # also report SSIM (slower)
_C.eval.compare_bicubic = False     # also report MATLAB-bicubic upsampling of the LR input
_C.eval.save_images = False         # write restored frames to output_dir/eval/<clip>/
_C.eval.save_strip = True           # write output_dir/eval/strips/<clip>.png: bicubic | model | GT
_C.eval.report = 'eval/report.json'  # JSON report path (relative to output_dir)

# ----------------------------------------------------------------------------- inference
_C.inference = CN()
_C.inference.source = ''            # video file or frame folder to restore (no ground truth needed)
_C.inference.max_frames = -1        # restore at most N frames (-1 = all)
_C.inference.padding = 'reflection_circle'  # temporal padding at clip ends (BasicSR test modes)
_C.inference.save_video = False     # also write output_dir/test/<name>.mp4
_C.inference.fps = 25               # frame rate of the written mp4
_C.inference.num_writers = 2        # image-writer threads draining the output queue
_C.inference.writer_queue_size = 16  # bounded queue of frames waiting to be written
_C.inference.tile = [0, 0, 0]       # eval/inference in tiles [frames, height, width] (LR px; 0 = whole)
_C.inference.tile_overlap = [0, 0, 0]  # overlap of neighbouring tiles [frames, height, width]

# ----------------------------------------------------------------------------- export
_C.export = CN()
_C.export.onnx = True               # freeze mode also writes <model>.onnx (tf2onnx) and checks it
_C.export.onnx_opset = 17           # ONNX opset for tf2onnx
_C.export.batch_size = 0            # batch dimension of the frozen graph: 0 = any (None); N = static N
_C.export.pb_xla_dcn = True         # keep the XLA-compiled deformable convs in the .pb (faster in TF;
                                    # the ONNX export always uses a plain graph)

# ----------------------------------------------------------------------------- reduced precision
_C.precision = CN()
_C.precision.keep_float = []          # layer-name substrings kept float32 (besides the task's own list)
_C.precision.allow_fallback = True    # no BF16/VNNI on this CPU: warn and run float32 (False: error)
_C.precision.guard = True             # measure the PSNR drop against float32 on the evaluation data
_C.precision.max_drop_bfloat16 = 0.05  # dB: freeze refuses a bfloat16 export that loses more
_C.precision.max_drop_int8 = 0.2      # dB: freeze refuses an int8 export that loses more
_C.precision.calibration_batches = 4  # int8: model calls of the evaluation data used for calibration
_C.precision.ort_threads = 0          # int8: onnxruntime intra-op threads (0 = its default)

# ----------------------------------------------------------------------------- SCI (video snapshot compressive imaging)
_C.sci = CN()
_C.sci.data_dir = 'data/sci'          # folder of benchmark / real-measurement .mat files to evaluate
_C.sci.datasets = []                  # .mat names (without extension) to evaluate; [] = all in data_dir
_C.sci.compression_ratio = 8          # frames per measurement B (training clips, random masks)
_C.sci.max_value = 255.0              # data scale: measurements and frames are divided by this
_C.sci.psnr_convention = 'pnp'        # pnp (PSNR peak = each GT frame's max) | cacti (peak = max_value)
_C.sci.first_measurement_only = ['runner', 'drop']  # name prefixes scored on measurement 1 only (PnP-SCI)
_C.sci.max_measurements = -1          # reconstruct at most N measurements per file (-1 = all)
_C.sci.mask_file = ''                 # mask for meas-only files, training and models ('' = file's own / random)
_C.sci.mask_key = 'mask'              # variable name of the mask inside sci.mask_file (.mat/.npz)
_C.sci.report = 'eval/sci_report.json'  # JSON report path (relative to output_dir); grids go next to it
_C.sci.save_grid = True               # write a PNG grid (ground truth vs reconstruction) per benchmark
_C.sci.save_frames = False            # also write the reconstructed frames of benchmark files
_C.sci.frames_dir = 'eval/sci_frames'  # reconstructed frames go to output_dir/<frames_dir>/<name>/
_C.sci.train_sources = []             # training videos / frame folders (gray = BT.601 luma of RGB)
_C.sci.crop_size = 256                # training crop side (the mask size in the official settings)
_C.sci.use_flip = True                # random horizontal and vertical flips of training clips
_C.sci.gap_tv_iter_max = 100          # GAP-TV iterations (PnP-SCI: 100)
_C.sci.gap_tv_lambda = 1.0            # GAP-TV projection step lambda (PnP-SCI: 1)
_C.sci.gap_tv_accelerate = True       # accelerated GAP (accumulated residual y1)
_C.sci.gap_tv_tv_weight = 0.07        # GAP-TV TV weight for data in [0, 1] (PnP-SCI: 0.07)
_C.sci.gap_tv_tv_iter_max = 5         # TV denoising passes per GAP iteration (PnP-SCI: 5)
_C.sci.gap_tv_bayer = False           # colour: RGGB Bayer measurements -> GAP-TV per site + demosaic

# ----------------------------------------------------------------------------- convert
_C.convert = CN()
_C.convert.source = ''            # official PyTorch checkpoint (.pth) to convert
_C.convert.key = ''               # '' = auto (params_ema > params > state_dict > raw); or a key
_C.convert.output = ''            # TF checkpoint prefix to write ('' = output_dir/converted/<model>)


def get_cfg_defaults():
    """A fresh copy of the defaults with every registered model's config node
    (``ascendvsr/zoo/<model>.py``); never mutate ``_C`` itself."""
    from ascendvsr.zoo import config_nodes
    cfg = _C.clone()
    for name, node in config_nodes().items():
        if name in cfg:
            raise KeyError(f'config node {name!r} of a model registration clashes with a '
                           f'generic node of ascendvsr/config/defaults.py')
        cfg[name] = node.clone()
    return cfg
