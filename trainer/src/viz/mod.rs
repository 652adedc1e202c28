//! Pictures of a trained network for a report: its filters, the distributions of its
//! parameters, feature maps, saliency maps and Grad-CAM grids. Each function returns PNG bytes.

mod landscape;
mod maps;
mod params;
mod tiles;

pub use landscape::{Landscape, contour_png, landscape, surface_png};
pub use maps::{feature_maps, gradcam_grid, input_gradient, saliency_grid};
pub use params::{Param, distributions, filters, params};
