//! The proxy-wasm glue: trait impls that read Envoy's properties, call the
//! pure modules and carry out their decisions. Nothing here `unwrap`s: a
//! failed host call is logged and, on a connection, closes it.

mod host;
mod parked;
mod registry_source;
mod root;
mod stream;
mod vm;

use proxy_wasm::traits::RootContext;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(root::Root::new(context_id))
    });
}}
