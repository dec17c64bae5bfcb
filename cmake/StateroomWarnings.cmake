# stateroom_warnings(<target>): warnings as errors on the project's own code.
function(stateroom_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror)
endfunction()
