"""Commented template parameter files printed by ``meanfield init``."""

BILINEAR = """\
# meanfield parameter file: bilinear model (linear attention = Stein flow; docs/models.md)
# Run with:  meanfield run THIS.toml -o out.h5

[model]
name = "bilinear"
dynamics = "accelerated"        # first_order | accelerated
d = 3
A = "identity"                  # kernel k(x, x') = x'^T A x: "identity", a number, or a d x d list
Q = [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]]   # W(x) = 1/2 (x - m)^T Q (x - m), symmetric
m = [1.0, -0.5, 0.25]
causal = false                  # token i sees j <= i only: prefix moments, factor 1/i

[damping]
schedule = "nesterov"           # none | constant (a) | nesterov (r, needs t0 > 0) | loglin (c_log, c_lin)
r = 3.0

[integrator]
name = "exp_euler"              # accelerated: exp_euler | kick_drift | heavy_ball | ab2 | tao2 | strang | rk4
h = 0.05                        # first_order: euler | heun | rk4 | nag (mean_shift: softmax/sphere only)
# beta = 0.9                    # heavy_ball only: momentum coefficient (default 1 - h alpha(t))
# omega = 5.0                   # tao2 / strang only: coupling of the doubled copies
# adaptive (error-controlled, both dynamics): name = dopri5 | ros34pw2 (stiff) | auto, then h is the
# optional first step; rtol = 1e-6, atol = 1e-9, h_max = 1e4 (docs/long-time.md)

[initial]
law = "gaussian"                # gaussian (mean, cov) | student_t (mean, cov, dof) | uniform_ellipsoid (mean, cov)
                                # | elliptical (mean, cov, radial = "gamma", radial_args = [2.0]: a scipy.stats law)
                                # | file (path: .npy of shape (n, d) or a run .h5, its last state)
n = 1000
mean = [0.5, 0.0, 0.0]
cov = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
momentum = "affine"             # accelerated only: zero | affine (y = S x + b) | gaussian (momentum_scale)
S = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]   # | file (momentum_path)
b = [0.0, 0.0, 0.0]
seed = 0

[run]
t0 = 1.0
t1 = 61.0                       # or: steps = 1200; or: oracle_calls = 1200 (exactly one of the three)
# layers = true                 # instead: one pass through per-layer weights (L steps)
save_every = 10                 # steps between saves (the first and last state are always saved)
dtype = "float64"               # float64 | float32
# save_at = [10.0, 100.0]       # instead of save_every: explicit save times in (t0, t1]
# saves_per_decade = 4          # or: a logarithmic clock, t = 10^(j/4) (long runs, adaptive methods)
# stop_clusters = 1             # sphere particle runs: stop when n_clusters <= 1
# check_every = 1               # steps between NaN / blow-up checks
# max_wall_time = 3600.0        # seconds; then the run stops cleanly (status "stopped: wall time")

[output]
path = "run.h5"
save = ["x", "y"]               # trajectories to store; diagnostics are always stored

[diagnostics]
dissipation = "auto"            # residual of dH/dt = -2 alpha K: step | save | off | auto
# moment_ode = true             # solve the closed moment ODE alongside (gaussian-type laws; zero/affine momentum)
"""


SOFTMAX = """\
# meanfield parameter file: softmax attention (docs/models.md), classical or accelerated
# Run with:  meanfield run THIS.toml -o out.h5      (cost per oracle call: O(N^2 d))

[model]
name = "softmax"
dynamics = "accelerated"        # first_order (classical attention) | accelerated (damped Hamiltonian)
d = 3
A = 0.2                         # query-key matrix (inverse temperature folded in); symmetric if accelerated.
                                # Larger A can make the accelerated energy run away (exp beats the quadratic W)
B = "identity"                  # preconditioner (symmetric if accelerated)
# V = [[...]]                   # first_order only: value matrix, default B A
# normalized = true             # first_order only: true = SA (softmax), false = USA (no normalization)
causal = false                  # token i attends to j <= i only (factor 1/i)
# summation = "fourier"        # exact (default, O(N^2)) | fourier: O(N log N) for d <= 3 (sphere: d = 2, 3
# summation_tol = 1e-10        # and Q^T K = I; softmax: symmetric PSD A); no causal mask
# mlp = "weights.npz"          # whole transformer blocks: a token-wise MLP after every attention step
# mlp_activation = "gelu"       # (W1 (h, d), b1, W2 (d, h), b2; leading layer axis L: per layer); see docs/mlp-block.md
Q = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]   # optional W(x) = 1/2 (x - m)^T Q (x - m); omit for none
m = [0.0, 0.0, 0.0]

[damping]
schedule = "constant"           # none | constant (a) | nesterov (r, needs t0 > 0) | loglin (c_log, c_lin)
a = 1.0

[integrator]
name = "exp_euler"              # accelerated: exp_euler | kick_drift | heavy_ball | ab2 | tao2 | strang | rk4
h = 0.01                        # first_order: euler | heun | rk4 | nag | mean_shift (one attention
                                # layer without the residual, x <- its average; SA without W; ignores h)
# beta = 0.9                    # heavy_ball only: momentum coefficient
# omega = 5.0                   # tao2 / strang only: coupling of the doubled copies
# adaptive (error-controlled, both dynamics): name = dopri5 | ros34pw2 (stiff) | auto, then h is the
# optional first step; rtol = 1e-6, atol = 1e-9, h_max = 1e4 (docs/long-time.md)

[initial]
law = "gaussian"                # gaussian (mean, cov) | student_t (mean, cov, dof) | uniform_ellipsoid (mean, cov)
                                # | elliptical (mean, cov, radial, radial_args) | file (path: .npy or run .h5)
                                # | tokens (ids or ids_path: networks from model.weights, docs/models.md)
n = 1000
mean = [0.5, 0.0, 0.0]
cov = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
momentum = "gaussian"           # accelerated only: zero | affine (S, b) | gaussian (momentum_scale)
momentum_scale = 0.3            # | file (momentum_path)
seed = 0

[run]
t0 = 0.0
t1 = 5.0                        # or: steps = 500; or: oracle_calls = 500 (exactly one of the three)
# layers = true                 # instead: one pass through per-layer weights (L steps)
save_every = 10                 # steps between saves (the first and last state are always saved)
dtype = "float64"               # float64 | float32
# save_at = [10.0, 100.0]       # instead of save_every: explicit save times in (t0, t1]
# saves_per_decade = 4          # or: a logarithmic clock, t = 10^(j/4) (long runs, adaptive methods)
# stop_clusters = 1             # sphere particle runs: stop when n_clusters <= 1
# check_every = 1               # steps between NaN / blow-up checks
# max_wall_time = 3600.0        # seconds; then the run stops cleanly (status "stopped: wall time")

[output]
path = "run.h5"
save = ["x", "y"]

[diagnostics]
dissipation = "auto"            # step | save | off | auto (softmax: save, K costs one pass over pairs)
# network = false               # networks from weights (model.weights): only cos_mean, rank_collapse

# [cluster]                     # one run's exact pair sums spread over a dask cluster, same bits
# scheduler = "local"           # local: worker processes here | "tcp://host:8786": a running scheduler
# workers = 2                   # local only: worker processes (default: all cores)
# threads_per_worker = 1        # local only: threads (numba threads of its rows) per worker
"""

TEMPLATES = {"bilinear": BILINEAR}
TEMPLATES["softmax"] = SOFTMAX

SPHERE = """\
# meanfield parameter file: tokens on the sphere S^{d-1} (docs/models.md): clustering of self-attention
# Run with:  meanfield run THIS.toml -o out.h5 ;  meanfield plot out.h5 --kind clusters

[model]
name = "sphere"
dynamics = "first_order"        # first_order | accelerated (damped Hamiltonian with tangent momenta)
d = 3                           # tokens on S^{d-1}
beta = 4.0                      # inverse temperature: logits beta <Q x_i, K x_j>
normalized = true               # true = SA (softmax), false = USA (unnormalized); accelerated: true
normalization = "post_ln"       # post_ln (|x_i| = 1) | pre_ln, peri_ln (residual stream x_i = r_i theta_i)
causal = false                  # token i attends to j <= i only (factor 1/i)
# summation = "fourier"        # exact (default, O(N^2)) | fourier: O(N log N) for d <= 3 (sphere: d = 2, 3
# summation_tol = 1e-10        # and Q^T K = I; softmax: symmetric PSD A); no causal mask
# mlp = "weights.npz"          # whole transformer blocks: a token-wise MLP after every attention step
# mlp_activation = "gelu"       # (W1 (h, d), b1, W2 (d, h), b2; leading layer axis L: per layer); see docs/mlp-block.md
# Q = "identity"                # query, key, value matrices (d x d, default identity);
# K = "identity"                # accelerated: Q^T K symmetric, no V
# V = "identity"

[damping]                       # accelerated (and nag) only; first-order runs warn if one is set
schedule = "none"               # none | constant (a) | nesterov (r, needs t0 > 0) | loglin (c_log, c_lin)
# schedule = "constant"         # with dynamics = "accelerated", e.g.
# a = 1.0

[integrator]
name = "rk4"                    # first_order: euler | heun | rk4 | nag | mean_shift (one layer without
                                # the residual: x <- a / |a|, post_ln; ignores h)
                                # accelerated: exp_euler | kick_drift | heavy_ball | ab2 | tao2 | strang | rk4
h = 0.05                        # every step is followed by the retraction x_i <- x_i / |x_i| (post_ln)
# adaptive (long runs, metastability): name = "auto" (or dopri5 | ros34pw2 (stiff)), no h needed,
# rtol = 1e-6, atol = 1e-9, h_max = 1e4; with [run] saves_per_decade = 4 and t1 = 1e8 (docs/long-time.md)
# omega = 50.0                  # tao2/strang on the sphere at beta >= 4: omega >= 25 with 2 omega h <= 1

[initial]
law = "sphere_uniform"          # sphere_uniform | equiangular (rho; needs n <= d) | file (path; unit vectors)
                                # | von_mises (d = 2: mu = [angles], kappa, weights)
n = 256
momentum = "zero"               # accelerated only: zero | gaussian (momentum_scale; projected to the tangent
seed = 0                        # space) | file (momentum_path)

[run]
t0 = 0.0
t1 = 20.0                       # or: steps = 400; or: oracle_calls = 1600 (exactly one of the three)
# layers = true                 # instead: one pass through per-layer weights (L steps)
save_every = 4
dtype = "float64"               # float64 | float32
# save_at = [10.0, 100.0]       # instead of save_every: explicit save times in (t0, t1]
# saves_per_decade = 4          # or: a logarithmic clock, t = 10^(j/4) (long runs, adaptive methods)
# stop_clusters = 1             # sphere particle runs: stop when n_clusters <= 1
# check_every = 1               # steps between NaN / blow-up checks
# max_wall_time = 3600.0        # seconds; then the run stops cleanly

[output]
path = "sphere.h5"
save = ["x"]                    # trajectories to store; E_beta, min/mean inner product, n_clusters always

[diagnostics]
dissipation = "auto"            # accelerated: residual of dH/dt = -2 alpha K: step | save | off | auto
# cluster_tol = 1e-3            # tokens with <x_i, x_j> > 1 - cluster_tol are in one cluster

[solver]
kind = "particles"              # particles | pde: the mean-field equation (N -> infinity), d = 2 only.
                                # The uniform law is a stationary state of the pde (particles cluster from
                                # sampling noise only): start a pde run from a non-uniform law, e.g.
                                #   meanfield run THIS.toml --set model.d=2 --set solver.kind='"pde"' --set
                                #   'initial={law = "von_mises", mu = [0.0, 2.5], kappa = 1.0, n = 256}'
                                # and the same --set with kind = "particles" for the particles beside it
# grid = 512                    # pde: cells on the circle (accelerated: [cells in theta, cells in momentum])

# [cluster]                     # one run's exact pair sums spread over a dask cluster, same bits
# scheduler = "local"           # local: worker processes here | "tcp://host:8786": a running scheduler
# workers = 2                   # local only: worker processes (default: all cores)
# threads_per_worker = 1        # local only: threads (numba threads of its rows) per worker
"""
TEMPLATES["sphere"] = SPHERE
