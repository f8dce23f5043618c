// qserve's HTTP side: cpp-httplib's server in front of one model::BatchEngine. Each HTTP request is
// parsed and checked (api.h), rendered into tokens (a chat through the model's template, as qrun -cnv
// does), and queued on the engine; its tokens come back on the engine thread through a per-request
// channel that the request's HTTP thread reads, whole or as server-sent events. A streaming client
// that goes away is seen at its next write (or within a second while its request waits); the request
// is then cancelled and its slot freed at the engine's next step.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cli/qserve/api.h"
#include "formats/error.h"
#include "model/batch_engine.h"
#include "model/model.h"
#include "tokenizer/chat_template.h"

namespace httplib {
class Server;
}

namespace qe::cli::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;        // "" = no key; else every endpoint but /health wants "Bearer KEY"
  size_t max_body = 1 << 20;  // bytes; larger bodies get 413
  int timeout_s = 600;        // read and write timeout of a connection (a slow client is cut)
  int threads_http = 0;       // HTTP worker threads; 0 = slots + queue + 32
  std::string model_name;     // "id" in /v1/models and responses
  RequestLimits limits;
};

class Server {
 public:
  Server(const model::Model& model, model::BatchEngine& engine, tokenizer::ChatTemplate tmpl,
         ServerOptions options);
  ~Server();

  // Binds host:port (error when the address is taken or invalid).
  Status bind();
  // Serves until stop(); call on its own thread.
  void listen();
  // New completion requests get 503 and /health says "draining"; requests already accepted go on.
  void begin_drain() { draining_ = true; }
  // Returns when every streamed response has been written out (or its client has gone): httplib ends
  // streams at stop(), so a drain waits for them first.
  void wait_streams() const;
  void stop();

 private:
  struct Counters;
  struct Channel;  // one request's events, from the engine thread to its HTTP thread
  void release(Channel& ch);
  void routes();
  std::string metrics() const;

  const model::Model& model_;
  model::BatchEngine& engine_;
  tokenizer::ChatTemplate tmpl_;
  ServerOptions options_;
  std::unique_ptr<httplib::Server> http_;
  std::unique_ptr<Counters> counters_;
  std::vector<int32_t> eog_;  // the end-of-generation ids, which ignore_eos bans
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> next_id_{1};
  std::atomic<int64_t> streams_{0};  // chunked responses (streams, long non-streamed ones) not yet finished
  int listen_socket_ = -1;           // the socket httplib listens on, once bound (see bind())
};

}  // namespace qe::cli::serve
