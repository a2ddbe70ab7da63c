# Building plugins (include/atask/plugins/plugin.hpp) and the programs that
# load them. In atask's own tree and, after find_package(atask), in yours.

# atask_add_plugin(<name> <source>...)
#   A loadable module named <name>.so. It compiles against atask's headers
#   but does not link atask: the program that loads it lends its own copy
#   (one task registry, one this_task, one logger). Put it in a folder of
#   its own (LIBRARY_OUTPUT_DIRECTORY) and point --plugin-dir there.
function(atask_add_plugin name)
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE atask::plugin_api)
  set_target_properties(${name} PROPERTIES PREFIX "" POSITION_INDEPENDENT_CODE ON)
endfunction()

# atask_export_to_plugins(<target>)
#   Makes the executable <target> a plugin host: it exports its symbols
#   (-rdynamic) and takes atask's libraries whole, so that every function a
#   plugin may call is there even if the program itself never calls it.
function(atask_export_to_plugins target)
  set_target_properties(${target} PROPERTIES ENABLE_EXPORTS ON)
  target_link_options(${target} PRIVATE
    "LINKER:--whole-archive" "$<TARGET_FILE:atask::atask>" "$<TARGET_FILE:atask::distributed>"
    "LINKER:--no-whole-archive")
endfunction()
