//! Python bindings (`ugatit_rs._native`): thin wrappers only; all logic is in the core crate.

mod args;
pub mod data;
pub mod error;
pub mod models;
pub mod tf;
pub mod train;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // torch._C must be initialised before any tensor crosses the boundary.
    m.py().import("torch")?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("StateDictError", m.py().get_type::<error::StateDictError>())?;
    // Facts the Python layer needs, exported once from their Rust source of truth.
    m.add("NETWORK_NAMES", crate::train::trainer::NETWORK_NAMES.to_vec())?;
    m.add("CYCLEGAN_NETWORK_NAMES", crate::train::CYCLEGAN_NETWORK_NAMES.to_vec())?;
    m.add("MODELS", crate::config::MODELS.to_vec())?;
    m.add("IMAGE_EXTENSIONS", crate::data::scan::IMAGE_EXTENSIONS.to_vec())?;
    m.add("DEMO_SIZES", (*crate::data::demo::SIZES.start(), *crate::data::demo::SIZES.end()))?;
    m.add("DEMO_MAX_IMAGES", crate::data::demo::MAX_IMAGES)?;
    m.add("CHECKPOINT_FORMAT", crate::train::checkpoint::FORMAT)?;
    m.add_class::<models::PyNetwork>()?;
    m.add_class::<models::PyGenerator>()?;
    m.add_class::<models::PyDiscriminator>()?;
    m.add_class::<models::PyCycleGenerator>()?;
    m.add_class::<models::PyPatchDiscriminator>()?;
    m.add_class::<models::PyExportedGenerator>()?;
    m.add_function(wrap_pyfunction!(models::set_compute, m)?)?;
    m.add_function(wrap_pyfunction!(models::check_device, m)?)?;
    m.add_class::<tf::PyTfCheckpoint>()?;
    m.add_function(wrap_pyfunction!(tf::tf_checkpoint_prefix, m)?)?;
    m.add_class::<crate::config::TrainConfig>()?;
    m.add_class::<train::PyTrainerBase>()?;
    m.add_class::<train::PyTrainer>()?;
    m.add_class::<train::PyCycleGanTrainer>()?;
    m.add_class::<data::PyDomainLoader>()?;
    m.add_function(wrap_pyfunction!(train::read_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(train::read_checkpoint_metadata, m)?)?;
    m.add_function(wrap_pyfunction!(train::is_torch_save, m)?)?;
    m.add_function(wrap_pyfunction!(train::zip_problem, m)?)?;
    m.add_function(wrap_pyfunction!(train::temporary_beside, m)?)?;
    m.add_function(wrap_pyfunction!(train::remove_stale_temporaries, m)?)?;
    m.add_function(wrap_pyfunction!(train::write_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(data::py_load_image, m)?)?;
    m.add_function(wrap_pyfunction!(data::demo_image, m)?)?;
    m.add_function(wrap_pyfunction!(data::write_demo_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(data::demo_scores, m)?)?;
    m.add_function(wrap_pyfunction!(data::prepare_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(data::list_images, m)?)?;
    m.add_function(wrap_pyfunction!(data::inception_inputs_from_files, m)?)?;
    m.add_function(wrap_pyfunction!(data::inception_inputs_from_arrays, m)?)?;
    Ok(())
}
