/* pinsignal browser collector. Sends events to this site's own origin only; writes no cookies. Served minified (this comment dropped). */
!function(w,d){var l=location,s=d.currentScript,a=s.dataset,u=s.src.replace(/c\.js.*$/,""),I=__OPTIN__,K="_psepik",S,b=[],h=[],T,L,c,m,g,C,H,
P=I&&!/(^|; )__CC__=(1|true|yes|granted|allow|accepted|on)(;|$)/i.test(d.cookie),Q=w.pinsignal,
N=()=>new Date().toISOString(),
p=(r,x)=>fetch(u+r,{method:"POST",body:JSON.stringify(x),keepalive:!0}).catch(N),
f=r=>{for(A.q?.push(...b),T=0;b.length||r;r=0)p("e",{batch:b.splice(0,20),sent_at:N()})},
q=(t,o)=>{o.type=t;o.message_id||=crypto.randomUUID?.()||N()+Math.random();o.timestamp=N();o.context={page:{url:l.href,referrer:d.referrer}};
C&&(o.context.consent=C);c===!1||(P?h:b).push(o);P||T||(T=Promise.resolve().then(f));return o.message_id},
v=()=>L!=l.href&&A.page(),
A={page:(r,i)=>(L=l.href,q("page",{properties:r||{},message_id:i})),
track:(e,r,o)=>q("track",{event:e,properties:r||{},message_id:o?.event_id||o?.message_id}),
identify:(i,t)=>q("identify",{user_id:i,traits:t||{}}),
remember:k=>p("remember",{key:k}),
consent:o=>{var e=S?.getItem(K);C={advertising:c=!!o?.advertising};P=0;S?.removeItem(K);c||(h=[]);h.map(x=>x.context.consent=C);p("consent",{...o,...C,epik:e}).then(()=>{b=b.concat(h);h=[];f()})}};
try{S=sessionStorage;I&&(m=new URLSearchParams(l.search).get("epik"))&&S.setItem(K,m)}catch{}
"tag"in a&&(A.q=[],(g=d.createElement("script")).src=u+"t.js",s.after(g));w.pinsignal=A;Q?.map?.(([n,...x])=>A[n](...x));
a.auto!="off"&&(A.page(0,a.pv),a.history!="off"&&(H=history.pushState,history.pushState=(...x)=>{H.apply(history,x);v()},addEventListener("popstate",v)));
addEventListener("pagehide",()=>f(!P&&d.cookie.includes("_epik=")))}(window,document);
