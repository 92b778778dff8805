/* pinsignal browser collector. Sends events to this site's own origin only; writes no cookies. Served minified (this comment dropped). */
!function(w,d){var l=location,s=d.currentScript,a=s.dataset,u=s.src.replace(/c\.js.*$/,""),I="__MODE__"=="opt-in",K="_psepik",S,b=[],h=[],T,L,c,m,
P=I&&!/(^|; )__CC__=(1|true|yes|granted|allow|accepted|on)(;|$)/i.test(d.cookie),Q=w.pinsignal;try{S=w.sessionStorage}catch(e){}
function N(){return new Date().toISOString()}
function p(r,x){return fetch(u+r,{method:"POST",body:JSON.stringify(x),keepalive:!0,headers:{"Content-Type":"text/plain"}}).catch(N)}
function f(){for(T=0;b.length;)p("e",{batch:b.splice(0,20),sent_at:N()})}
function q(t,o){o.type=t;o.message_id=o.message_id||(crypto.randomUUID?crypto.randomUUID():N()+Math.random());o.timestamp=N();o.context={page:{url:l.href,referrer:d.referrer}};
if(c!=null)o.context.consent={advertising:c};c===!1||(P?h:b).push(o);P||T||(T=Promise.resolve().then(f));return o.message_id}
function v(){L!=l.href&&A.page()}
var A={page:function(r,i){L=l.href;return q("page",{properties:r||{},message_id:i})},
track:function(e,r,o){o=o||{};return q("track",{event:e,properties:r||{},message_id:o.event_id||o.message_id})},
identify:function(i,t){return q("identify",{user_id:i,traits:t||{}})},
consent:function(o){var e=S&&S.getItem(K);c=!!(o&&o.advertising);P=0;S&&S.removeItem(K);c||(h=[]);h.map(function(x){x.context.consent={advertising:c}});p("consent",{advertising:c,epik:e}).then(function(){b=b.concat(h);h=[];f()})}};
I&&S&&(m=l.search.match(/[?&]epik=([^&#]*)/))&&S.setItem(K,decodeURIComponent(m[1]));
w.pinsignal=A;Q&&Q.map&&Q.map(function(x){A[x[0]].apply(A,x.slice(1))});
if(a.auto!="off"){A.page(0,a.pv);if(a.history!="off"){var H=history.pushState;history.pushState=function(){H.apply(this,arguments);v()};w.addEventListener("popstate",v)}}
w.addEventListener("pagehide",f)}(window,document);
