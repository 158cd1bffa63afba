#pragma once
// The whole public API of libpacklock.

#include <packlock/cluster.hpp>
#include <packlock/error.hpp>
#include <packlock/lock_errc.hpp>
#include <packlock/lock_manager.hpp>
#include <packlock/mode.hpp>
#include <packlock/named_locks.hpp>
#include <packlock/observe.hpp>
#include <packlock/options.hpp>
#include <packlock/owner.hpp>
#include <packlock/pack_lock.hpp>
#include <packlock/pack_lock_hold.hpp>
#include <packlock/sidecar_name.hpp>
#include <packlock/try_lock.hpp>
#include <packlock/version.hpp>
