// Ctrl-C as llama-cli users expect it: the first SIGINT (or SIGTERM) asks the work in progress to stop
// at its next safe point (a token, a chunk), which then reports what it did and exits normally; a
// second one, before the first was handled, exits at once (128 + the signal, as a shell reports it). A
// repeat within 0.1 s is the first one delivered twice (GNU timeout signals the child and its group).
// The front ends poll interrupted(); the library only sees callbacks that say "stop".
#pragma once

namespace qe::cli {

// Installs the handlers for SIGINT and SIGTERM.
void install_interrupt_handlers();
bool interrupted();
// The first signal received (SIGINT or SIGTERM), 0 if none: a front end that stops on it exits with 128 + it,
// as a shell reports a process the signal ended.
int interrupt_signal();
// The interrupt was handled (a chat reply stopped): the next Ctrl-C is a first one again.
void clear_interrupt();

}  // namespace qe::cli
